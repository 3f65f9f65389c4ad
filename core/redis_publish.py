"""A daemon publishes its accounts on Redis Streams: ``qtrader-tui --no-ui --publish redis://...``.

The daemon keeps supervising its traders exactly as without it; Redis is never the record
(the accounts' databases are). ``RedisPublisher`` mirrors the aggregator onto the keys of
core/redis_link.py: every message the aggregator folds in (and each trader status change)
becomes one entry of the account's stream; every ``snapshot_interval`` an account that changed
gets a fresh snapshot, written by one script that takes the stream's last id, so the
snapshot says exactly which entries it holds. Commands come from the host's command stream
through a consumer group: each is answered once, on the console's reply stream, by the same
handlers as the control socket (``ControlServer.answer``), unless its deadline has passed
("expired, not sent"). A restarted daemon reads only what was never delivered: what its
previous run had taken is dropped with that run's consumer, never replayed.

Redis away: nothing waits for it. Changes are not queued (a seq gap tells a console to
resync), the daemon retries every ``RETRY_SECONDS``, and when Redis is back it claims its
accounts again and writes every snapshot afresh. What it has not yet written is bounded
(``MAX_QUEUED``): past that it drops it and writes snapshots instead. A console costs the
daemon nothing: streams are capped, no console has a buffer here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from config import PublishConfig
from core.aggregator import Change
from core.control import ControlServer, console_state, trader_status
from core.manager import TradingManager
from core.protocol import Message, ProtocolError, Reply
from core.redis_link import (
    COMMAND_GROUP,
    COMMAND_MAXLEN,
    EXPIRED,
    HEARTBEAT_INTERVAL,
    HEARTBEAT_TTL,
    REPLY_KEY_PATTERN,
    REPLY_TTL_SECONDS,
    HostBeat,
    command_key,
    connect,
    decode_beat,
    decode_message,
    default_host,
    encode_beat,
    encode_message,
    host_key,
    new_run,
    owner_key,
    snapshot_key,
    stream_key,
    where,
)
from core.supervisor import pid_alive

log = logging.getLogger("qtrader.redis")

RETRY_SECONDS = 1.0
#: Entries waiting to be written before the queue is dropped for fresh snapshots.
MAX_QUEUED = 200_000
#: Entries written in one round trip, and round trips before the heartbeat's turn.
BATCH = 2000
BURST = 10
#: Commands answered at once.
MAX_IN_FLIGHT = 32

# The snapshot and the stream id it is current to, in one step: only this daemon writes the
# account's stream, so its last entry is the last change the snapshot holds (or one it also
# holds: the console skips those by seq).
_SNAPSHOT_SCRIPT = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
redis.call('HSET', KEYS[2], 'id', id, 'm', ARGV[1], 'run', ARGV[2])
return id
"""
# Claim or keep an account: free or ours -> ours for another TTL; else who has it.
_CLAIM_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ''
end
return holder
"""
# The host's heartbeat: written when the key is free, ours (our run), or the one of ARGV[3]
# (a dead daemon's of our machine, found so by _claim); else the heartbeat that is there.
# ``run`` read from the JSON as digits (cjson would make it a double, printed rounded).
_BEAT_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local run = string.match(cur, '"run":(%d+)') or ''
  if run ~= ARGV[2] and run ~= ARGV[3] then return cur end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
return false
"""
# The heartbeat deleted on a clean stop, when it is still ours.
_UNBEAT_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
if cur then
  if string.match(cur, '"run":(%d+)') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
end
return 0
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class AccountTaken(RuntimeError):
    """An account (or the host name) is already published by another live daemon."""


class RedisPublisher:
    """Mirrors one daemon's accounts onto Redis and answers the commands sent there."""

    def __init__(
        self,
        manager: TradingManager,
        control: ControlServer,
        settings: PublishConfig,
        *,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.manager = manager
        self.control = control
        self.settings = settings
        self.host = settings.host or default_host()
        self.where = where(settings.url)
        self.say = say or (lambda text: log.info("%s", text))
        self.run = new_run()
        self.consumer = f"{self.host}-{self.run}"
        self.up = False
        self._seq: dict[str, int] = {}
        self._queue: deque[tuple[str, bytes]] = deque()
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()  # changed since its last snapshot
        self._snapped: dict[str, float] = {}  # monotonic time of the last snapshot
        self._undo: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._redis: Any = None
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._commands: set[asyncio.Task[None]] = set()
        self._closing = False
        self._said_down = False
        #: Redis's clock less this host's (measured at each heartbeat); None: not measured yet
        self._redis_ahead: float | None = None
        self._may_time = True  # False: Redis's TIME is not for our user (the README's ACL)
        self.taken: str = ""  # why publishing stopped for good (another daemon has an account)

    @property
    def accounts(self) -> list[tuple[str, str]]:
        return [(aid, state.gateway) for aid, state in self.manager.aggregator.states.items()]

    # ------------------------------------------------------------------ lifecycle

    async def claim(self) -> bool:
        """Before any trader starts: claim the host name and every account. Raises
        ``AccountTaken`` (naming both hosts) when a live daemon has one; False when Redis
        cannot be reached now (the daemon trades anyway and claims when it is back)."""
        redis = self._connect()
        try:
            await self._claim(redis)
        except AccountTaken:
            raise
        except Exception as exc:
            self.say(f"REDIS link down: {self.where} unreachable ({_words(exc)}); trading on, retrying")
            self._said_down = True
            return False
        finally:
            await redis.aclose()
        return True

    def start(self) -> None:
        """Tap the aggregator and start publishing (and retrying while Redis is away)."""
        agg = self.manager.aggregator
        for account_id in agg.states:
            self._seq[account_id] = self.run
        self._undo = [agg.tap(self._on_message), agg.subscribe(self._on_change)]
        self._task = asyncio.create_task(self._run(), name="redis-publish")

    async def stop(self) -> None:
        """Stop publishing; a clean stop takes the heartbeat and the accounts' ownership away
        at once (consoles show "host down" now, not after the TTL)."""
        self._closing = True
        for undo in self._undo:
            undo()
        if self._task is not None:
            self._task.cancel()
            done, _ = await asyncio.wait({self._task}, timeout=5.0)
            if not done:
                log.error("redis: the publisher did not stop within 5 s; leaving it")
        for task in list(self._commands):
            task.cancel()
        redis = self._connect()
        try:
            async with asyncio.timeout(3.0):
                unbeat = redis.register_script(_UNBEAT_SCRIPT)
                await unbeat(keys=[host_key(self.host)], args=[str(self.run)])
                release = redis.register_script(_RELEASE_SCRIPT)
                for account_id, _ in self.accounts:
                    await release(keys=[owner_key(account_id)], args=[self.host])
        except Exception as exc:
            log.warning("redis: could not withdraw from %s on stop (%s)", self.where, _words(exc))
        finally:
            await redis.aclose()

    # ------------------------------------------------------------------ changes in

    def _on_message(self, account_id: str, msg: Message) -> None:
        self._add(account_id, msg.type, msg.data)

    def _on_change(self, change: Change) -> None:
        self._dirty.add(change.account_id)
        if change.kind == "status":
            state = self.manager.aggregator.states[change.account_id]
            self._add(change.account_id, "trader_status", trader_status(state))

    def _add(self, account_id: str, msg_type: Any, data: Any) -> None:
        seq = self._seq[account_id] = self._seq[account_id] + 1
        if not self.up:
            return  # the gap in seq makes every console resync from the next snapshot
        if len(self._queue) >= MAX_QUEUED:  # Redis too slow for us: snapshots instead
            log.warning("redis: %d changes unwritten; dropped for fresh snapshots", len(self._queue))
            self._queue.clear()
            self._dirty.update(self._seq)
            self._snapped.clear()
            return
        self._queue.append((account_id, encode_message(msg_type, data, account_id=account_id, seq=seq)))
        self._wake.set()

    # ------------------------------------------------------------------ the link

    def _connect(self) -> Any:
        s = self.settings
        return connect(s.url, username=s.username, password=s.password)

    async def _run(self) -> None:
        said_down = self._said_down  # claim() said it already
        while not self._closing:
            redis = self._connect()
            self._redis = redis
            try:
                await self._session(redis)
            except AccountTaken as exc:
                self.taken = str(exc)
                self.say(f"REDIS stopped publishing: {exc}")
                return
            except Exception as exc:
                if self.up or not said_down:  # once per outage, not once per retry
                    self.say(f"REDIS link down: {self.where} ({_words(exc)}); trading on, retrying")
                said_down = True
            else:
                said_down = False
            finally:
                self.up = False
                self._redis = None
                with contextlib.suppress(Exception):
                    await redis.aclose()
            await asyncio.sleep(RETRY_SECONDS)

    async def _session(self, redis: Any) -> None:
        """One connection's life: claim, then write and read commands until the link fails."""
        await self._claim(redis)
        await self._measure_clock(redis)
        await self._join_group(redis)
        self._queue.clear()
        self._dirty.update(self._seq)  # everything afresh: consoles resync from these
        self._snapped.clear()
        self.up = True
        self.say(f"REDIS publishing {len(self._seq)} accounts on {self.where} as host {self.host}")
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._write(redis))
                group.create_task(self._heartbeat(redis))
                group.create_task(self._read_commands(redis))
        except ExceptionGroup as group_exc:
            raise group_exc.exceptions[0] from None

    async def _claim(self, redis: Any) -> None:
        beat = await redis.get(host_key(self.host))
        dead_run = 0  # a heartbeat of our machine's previous daemon, dead: ours to replace
        if beat is not None:
            other = decode_beat(beat)
            if other.run != self.run and not self._gone(other):
                raise self._host_taken(other)
            dead_run = other.run
        claim = redis.register_script(_CLAIM_SCRIPT)
        ttl = int(HEARTBEAT_TTL * 1000)
        for account_id, _ in self.accounts:
            holder = await claim(keys=[owner_key(account_id)], args=[self.host, ttl])
            if holder:
                raise AccountTaken(
                    f"account {account_id} is already published on {self.where} by host "
                    f"{holder.decode(errors='replace')} (live); host {self.host} refuses to publish it"
                )
        await self._beat(redis, replace=dead_run)

    def _host_taken(self, other: HostBeat) -> AccountTaken:
        return AccountTaken(
            f"host name '{self.host}' is already used on {self.where} by a live daemon "
            f"(pid {other.pid} on {other.machine}); set publish.host apart"
        )

    @staticmethod
    def _gone(other: HostBeat) -> bool:
        """A heartbeat of this host name left by our own machine's previous daemon, now dead."""
        return other.machine == socket.gethostname() and not pid_alive(other.pid)

    async def _beat(self, redis: Any, replace: int = 0) -> None:
        """Write the heartbeat, unless another daemon's is there (the same host name on
        another machine, that took it while ours had lapsed): then ``AccountTaken``."""
        beat = HostBeat(
            host=self.host,
            run=self.run,
            pid=os.getpid(),
            machine=socket.gethostname(),
            accounts=self.accounts,
            started=time.time(),
        )
        script = redis.register_script(_BEAT_SCRIPT)
        ttl = int(HEARTBEAT_TTL * 1000)
        there = await script(keys=[host_key(self.host)], args=[encode_beat(beat), self.run, replace, ttl])
        if there:
            try:
                other = decode_beat(there)
            except msgspec.MsgspecError:
                other = HostBeat(host=self.host, run=0, pid=0, machine="?", accounts=[], started=0.0)
            raise self._host_taken(other)

    async def _write(self, redis: Any) -> None:
        snapshot = redis.register_script(_SNAPSHOT_SCRIPT)
        maxlen = self.settings.stream_maxlen
        interval = self.settings.snapshot_interval
        while not self._closing:  # a cancel that a library swallowed still ends it
            if not self._wake.is_set():
                # not asyncio.timeout around the wait: on 3.11 a cancel racing the timer can
                # turn into a TimeoutError, and this loop would outlive its stop
                waiter = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait({waiter}, timeout=min(interval, HEARTBEAT_INTERVAL) / 2)
                finally:
                    waiter.cancel()
            self._wake.clear()
            for _ in range(BURST):  # then the snapshots' turn
                if not self._queue:
                    break
                pipe = redis.pipeline(transaction=False)
                for _ in range(min(BATCH, len(self._queue))):
                    account_id, payload = self._queue.popleft()
                    pipe.xadd(stream_key(account_id), {"m": payload}, maxlen=maxlen, approximate=True)
                before = time.time()
                ids = await pipe.execute()
                if not self._may_time and ids:  # the last one was stamped about now
                    ms = int(ids[-1].split(b"-", 1)[0])
                    self._redis_ahead = ms / 1000 - (before + time.time()) / 2
            if self._queue:
                self._wake.set()
            now = time.monotonic()
            for account_id in list(self._dirty):
                if now - self._snapped.get(account_id, -1e9) < interval:
                    continue
                self._dirty.discard(account_id)
                self._snapped[account_id] = now
                await snapshot(
                    keys=[stream_key(account_id), snapshot_key(account_id)],
                    args=[self._snapshot(account_id), self.run],
                )

    async def _heartbeat(self, redis: Any) -> None:
        """Its own task (and connection): however much there is to write, it never lapses."""
        claim = redis.register_script(_CLAIM_SCRIPT)
        ttl = int(HEARTBEAT_TTL * 1000)
        while not self._closing:  # a cancel that a library swallowed still ends it
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            await self._beat(redis)
            await self._measure_clock(redis)
            for account_id, _ in self.accounts:
                holder = await claim(keys=[owner_key(account_id)], args=[self.host, ttl])
                if holder:
                    raise AccountTaken(
                        f"account {account_id} was taken on {self.where} by host "
                        f"{holder.decode(errors='replace')} while host {self.host} was away"
                    )

    async def _measure_clock(self, redis: Any) -> None:
        """How far Redis's clock (the one its entry ids are stamped with) is ahead of ours:
        by TIME, or, for a user that may not (the README's ACL user), by the ids of the
        entries this daemon writes (``_write``)."""
        if not self._may_time:
            return
        from redis.exceptions import ResponseError

        before = time.time()
        try:
            sec, usec = await redis.time()
        except ResponseError as exc:
            log.info("redis: no TIME for this user (%s); Redis's clock read from our entries' ids", exc)
            self._may_time = False
            return
        self._redis_ahead = int(sec) + int(usec) / 1e6 - (before + time.time()) / 2

    def _lateness(self, entry_id: bytes, msg: Message, deadline: float) -> float:
        """Seconds past its deadline (<= 0: in time), by two measures, the worse one: this
        host's clock against the deadline (the console's clock); and the time it has waited
        since Redis took it (its entry id, Redis's clock) against the time it was given to
        live (deadline less ``ts``, both the console's clock). The second holds whatever the
        console's clock says: an hour ahead, its deadline would leave a command alive for
        an hour (one sent while this daemon was down, run when it is back)."""
        by_our_clock = time.time() - deadline
        if msg.ts <= 0 or self._redis_ahead is None:
            return by_our_clock
        sent = int(entry_id.split(b"-", 1)[0]) / 1000
        waited = time.time() + self._redis_ahead - sent
        return max(by_our_clock, waited - (deadline - msg.ts))

    def _snapshot(self, account_id: str) -> bytes:
        state = self.manager.aggregator.states[account_id]
        view = console_state(state, self.manager.config.socket.max_frame_bytes // 2)
        # its seq: the last change it holds (everything up to now has been folded in)
        return encode_message("console_state", view, account_id=account_id, seq=self._seq[account_id])

    # ------------------------------------------------------------------ commands

    async def _join_group(self, redis: Any) -> None:
        """The host's command group, created at the stream's end the first time; the consumers
        of previous runs are deleted with what they had taken (never executed again)."""
        key = command_key(self.host)
        try:
            await redis.xgroup_create(key, COMMAND_GROUP, id="$", mkstream=True)
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        for consumer in await redis.xinfo_consumers(key, COMMAND_GROUP):
            name = consumer.get(b"name", consumer.get("name"))
            name = name.decode() if isinstance(name, bytes) else str(name)
            if name != self.consumer:
                await redis.xgroup_delconsumer(key, COMMAND_GROUP, name)

    async def _read_commands(self, redis: Any) -> None:
        key = command_key(self.host)
        while not self._closing:  # a cancel that a library swallowed still ends it
            batches = await redis.xreadgroup(COMMAND_GROUP, self.consumer, {key: ">"}, count=100, block=500)
            for _key, entries in batches or ():
                for entry_id, fields in entries:
                    await self._slots.acquire()
                    task = asyncio.create_task(self._command(redis, entry_id, fields))
                    self._commands.add(task)
                    task.add_done_callback(self._commands.discard)

    async def _command(self, redis: Any, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            reply_to = fields.get(b"reply", b"").decode(errors="replace")
            if not REPLY_KEY_PATTERN.match(reply_to):
                log.warning("redis: a command with no usable reply stream (%r); dropped", reply_to[:100])
                await redis.xack(command_key(self.host), COMMAND_GROUP, entry_id)  # not left pending
                return
            req_id: int | None = None
            account_id = ""
            try:
                msg = decode_message(fields.get(b"m", b""))
                req_id, account_id = msg.req_id, msg.account_id
                deadline = float(fields.get(b"deadline", b"0"))
                if not math.isfinite(deadline):
                    raise ValueError(f"its deadline is no time ({deadline})")
                late = self._lateness(entry_id, msg, deadline)
            except (ProtocolError, ValueError) as exc:
                req_id = getattr(exc, "req_id", None)
                reply = Reply(ok=False, error=f"request refused: {exc}")
            else:
                if late > 0:
                    reply = Reply(
                        ok=False,
                        error=f"{EXPIRED}: it reached host {self.host} {late:.1f} s after its deadline",
                    )
                    log.warning("redis: %s %s for %s expired %.1f s ago", msg.type, req_id, account_id, late)
                else:
                    reply = await self.control.answer(msg)
            payload = encode_message("reply", reply, account_id=account_id, req_id=req_id)
            pipe = redis.pipeline(transaction=False)
            pipe.xadd(reply_to, {"m": payload}, maxlen=COMMAND_MAXLEN, approximate=True)
            pipe.expire(reply_to, REPLY_TTL_SECONDS)
            pipe.xack(command_key(self.host), COMMAND_GROUP, entry_id)
            await pipe.execute()
        except Exception as exc:  # the link went: the console answers itself "outcome unknown"
            log.warning("redis: could not answer command %s (%s)", entry_id, _words(exc))
        finally:
            self._slots.release()


def _words(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
