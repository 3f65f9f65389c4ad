"""What a publishing daemon and an attached console agree on over Redis Streams.

Keys (one Redis, one database, every host of one operator; ARCHITECTURE.md, "Processes"):

- ``qtrader:host:<HOST>`` - a daemon's heartbeat (``HostBeat``, JSON) with a TTL of
  ``HEARTBEAT_TTL``: its accounts and its run; gone = the host is down.
- ``qtrader:owner:<ACCOUNT>`` - the host that publishes the account (same TTL): an account id
  is published by one live daemon only.
- ``qtrader:stream:<ACCOUNT>`` - the account's changes: one entry per message, field ``m`` the
  same JSON ``Message`` as a control-socket frame (``console_state`` aside), its ``seq`` one more
  than the previous entry's within a daemon's run; capped with ``MAXLEN ~``.
- ``qtrader:snap:<ACCOUNT>`` - a hash: ``m`` a ``console_state`` message (its ``seq`` is the last
  change it holds), ``id`` the stream id it is current to, ``run`` the daemon's run. A console
  reads it, then the stream after ``id``, and skips any entry whose ``seq`` it already holds.
- ``qtrader:cmd:<HOST>`` - the daemon's commands (consumer group ``daemon``): field ``m`` a
  request ``Message``, ``deadline`` (epoch seconds: never executed after it), ``reply`` the
  console's reply stream ``qtrader:reply:<CONSOLE>``, which gets exactly one ``reply`` each.

Nothing secret is ever written: the messages are the ones the control socket carries, which
already hold no secret (ARCHITECTURE.md, "Invariants" 3).
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import msgspec

from core.models import Struct
from core.protocol import Message, MessageType, decode_payload

PREFIX = "qtrader:"
#: The daemon refreshes its heartbeat and its ownership keys this often ...
HEARTBEAT_INTERVAL = 1.0
#: ... and they lapse after this long without: then its accounts show "host down".
HEARTBEAT_TTL = 3.0
#: A command not started by then (seconds after it was sent) is answered "expired, not sent".
DEFAULT_DEADLINE = 5.0
#: Entries kept per command and reply stream (MAXLEN ~): commands are answered in seconds.
COMMAND_MAXLEN = 10_000
#: A reply stream whose console is gone goes away after this long.
REPLY_TTL_SECONDS = 300
COMMAND_GROUP = "daemon"
HOST_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")

#: What a command refused before it left says, and what a console says while Redis is away.
LINK_DOWN = "link down"
HOST_DOWN = "host down"
EXPIRED = "expired, not sent"


def host_key(host: str) -> str:
    return f"{PREFIX}host:{host}"


def owner_key(account_id: str) -> str:
    return f"{PREFIX}owner:{account_id}"


def stream_key(account_id: str) -> str:
    return f"{PREFIX}stream:{account_id}"


def snapshot_key(account_id: str) -> str:
    return f"{PREFIX}snap:{account_id}"


def command_key(host: str) -> str:
    return f"{PREFIX}cmd:{host}"


def reply_key(console: str) -> str:
    return f"{PREFIX}reply:{console}"


REPLY_KEY_PATTERN = re.compile(rf"^{PREFIX}reply:[A-Za-z0-9_.-]{{1,96}}$")


def default_host() -> str:
    """This machine's name, as a host name on the Redis (the characters a key may carry)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64] or "host"


def new_run() -> int:
    """A daemon run's first ``seq``: microseconds since the epoch, so a restarted daemon's
    entries always jump ahead of its previous run's (a console sees the jump and resyncs)."""
    return time.time_ns() // 1000


class HostBeat(Struct, kw_only=True):
    """``qtrader:host:<HOST>``: who publishes there, since when, which accounts."""

    host: str
    run: int
    pid: int
    machine: str  # socket.gethostname(): two daemons on one machine with one host name
    accounts: list[tuple[str, str]]  # (account_id, gateway), in the daemon's order
    started: float


_encoder = msgspec.json.Encoder()
_beat_decoder = msgspec.json.Decoder(HostBeat)


def encode_beat(beat: HostBeat) -> bytes:
    return _encoder.encode(beat)


def decode_beat(raw: bytes) -> HostBeat:
    return _beat_decoder.decode(raw)


def encode_message(
    msg_type: MessageType, data: Any, *, account_id: str, seq: int = 0, req_id: int | None = None
) -> bytes:
    """One entry's ``m``: the JSON of a frame, without its length prefix."""
    return _encoder.encode(
        Message.new(type=msg_type, account_id=account_id, seq=seq, ts=time.time(), req_id=req_id, data=data)
    )


def decode_message(raw: bytes) -> Message:
    """An entry's ``m`` back into a typed ``Message`` (raises ``ProtocolError`` like a frame)."""
    return decode_payload(raw)


def where(url: str) -> str:
    """``host:port/db`` of a Redis URL, for messages (never a credential: there is none in it)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"


def connect(url: str, *, username: str | None = None, password: str | None = None) -> Any:
    """A ``redis.asyncio.Redis`` for ``url`` (``rediss://``: TLS), with short socket timeouts:
    a Redis that went away must show as "link down" within seconds, not hang a loop."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return aioredis.Redis.from_url(
        url,
        username=username,
        password=password,
        socket_connect_timeout=3.0,
        socket_timeout=10.0,
        health_check_interval=0,
        retry_on_timeout=False,
        retry=Retry(NoBackoff(), 0),  # our loops retry, and say "link down" meanwhile
        decode_responses=False,
    )
