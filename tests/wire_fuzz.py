"""Seeded hostile frames for the fuzz tests (tests/test_wire_fuzz.py): random bytes, wrong
schemas, unknown types, huge and deep values, NaN/Infinity, unicode; each one well framed
(a right length prefix), so none of them may cost the connection it arrives on. The frames
that break the framing itself (a length past the limit, a stream ending inside a frame)
are ``broken_framing``: those, and only those, close a connection."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from core.models import CHINA_TZ, TraderInfo
from core.protocol import Link

HEADER = struct.Struct(">I")
WHEN = datetime(2026, 12, 3, 14, 5, 3, tzinfo=CHINA_TZ).isoformat()

#: Payloads that decode (or nearly): the fuzzer mutates one of their fields at a time.
TEMPLATES: dict[str, dict[str, Any]] = {
    # manager -> trader, and the console's requests to the control socket
    "order_req": {
        "vt_symbol": "m2705.DCE",
        "direction": "LONG",
        "offset": "OPEN",
        "price": 3000.0,
        "volume": 1,
    },
    "cancel_req": {"order_id": "LOCAL.1", "account_id": ""},
    "cancel_all_req": {"vt_symbol": "m2705.DCE"},
    "close_req": {"vt_symbol": "m2705.DCE", "direction": "LONG", "volume": 1},
    "strategy_req": {"action": "start", "name": "nope"},
    "status_req": {},
    "info_req": {},
    "history_req": {"kind": "orders", "limit": 50},
    "subscribe_req": {"symbols": ["m2705.DCE"]},
    "watchlist_req": {"action": "listed", "product": "m"},
    "quote": {"vt_symbol": "m2705.DCE", "datetime": WHEN, "last_price": 3000.0},
    "quote_source": {"source": "X", "up": True},
    "state_req": {"state": "ACTIVE"},
    # trader -> manager
    "watchlist": {"symbols": ["m2705.DCE"]},
    "tick": {"vt_symbol": "m2705.DCE", "datetime": WHEN, "last_price": 3000.0, "bid_price_1": 2999.0},
    "order": {
        "account_id": "FZ",
        "order_id": "LOCAL.9",
        "vt_symbol": "m2705.DCE",
        "direction": "LONG",
        "offset": "OPEN",
        "type": "LIMIT",
        "price": 3000.0,
        "volume": 1,
        "status": "REJECTED",
        "datetime": WHEN,
        "status_msg": "refused",
    },
    "trade": {
        "account_id": "FZ",
        "trade_id": "T9",
        "order_id": "LOCAL.9",
        "vt_symbol": "m2705.DCE",
        "direction": "LONG",
        "offset": "OPEN",
        "price": 3000.0,
        "volume": 1,
        "datetime": WHEN,
    },
    "position": {
        "account_id": "FZ",
        "vt_symbol": "m2705.DCE",
        "direction": "LONG",
        "volume": 1,
        "price": 3000.0,
    },
    "account": {"account_id": "FZ", "balance": 1e6, "available": 9e5},
    "log": {"account_id": "FZ", "datetime": WHEN, "level": "ERROR", "message": "fuzz"},
    "trigger": {
        "account_id": "FZ",
        "datetime": WHEN,
        "instance": "g",
        "vt_symbol": "m2705.DCE",
        "condition": "c",
        "price": 1.0,
        "action": "buy",
        "result": "failed",
    },
    "contract": {"vt_symbol": "m2705.DCE", "symbol": "m2705", "exchange": "DCE", "size": 10, "pricetick": 1},
    "equity": [WHEN, 1e6, 9e5, 0, 0],
    "strategy": {"account_id": "FZ", "name": "g", "class_name": "Grid", "vt_symbol": "m2705.DCE"},
    "reply": {"ok": True, "result": None},
    "heartbeat": {"account_id": "FZ", "gateway": "sim", "pid": 0, "gateway_status": "CONNECTED"},
    "status": {"account_id": "FZ", "gateway": "sim", "pid": 0, "message": "fuzz"},
    "register": {"account_id": "FZ", "gateway": "sim", "pid": 0},
    "snapshot": {"info": {"account_id": "FZ", "gateway": "sim", "pid": 0}, "orders": []},
    "bar": {
        "vt_symbol": "m2705.DCE",
        "datetime": WHEN,
        "open_price": 1.0,
        "high_price": 1.0,
        "low_price": 1.0,
        "close_price": 1.0,
    },
}

TRICKY_TEXT = [
    "",
    "au2612.SHFE\n14:00:00 DQ2    FILL  BUY OPEN au2612.SHFE 100 @ 1 (forged)",
    "\r\x1b[2J\x1b[31mred\x00nul\x7f",
    "\u2028\u2029\x85\u200b\u202e\ufeff",
    "期货 黄金 🚀 \U0010ffff",
    "m2705.DCE",
    "LOCAL.1",
]


class Fuzzer:
    """Seeded frames for one target; counts what it made by kind."""

    def __init__(self, seed: int, types: list[str], account_id: str = "") -> None:
        self.rng = random.Random(seed)
        self.types = types
        self.account_id = account_id
        self.counts: dict[str, int] = {}
        self._req_id = 1000

    # ------------------------------------------------------------ values

    def text(self) -> str:
        r = self.rng
        pick = r.random()
        if pick < 0.5:
            return r.choice(TRICKY_TEXT)
        if pick < 0.9:
            return "".join(
                chr(r.choice([r.randrange(0, 0x80), r.randrange(0x80, 0x3000)]))
                for _ in range(r.randrange(40))
            )
        return "y" * r.choice([5_000, 100_000, 600_000])  # huge

    def value(self, depth: int = 0) -> Any:
        r = self.rng
        pick = r.randrange(10 if depth < 3 else 6)
        if pick == 0:
            return None
        if pick == 1:
            return r.choice([True, False])
        if pick == 2:
            return r.choice([0, -1, 1, 2**31, 2**63 - 1, -(2**63), r.randrange(-(10**6), 10**6)])
        if pick == 3:
            return r.choice([0.5, -0.0, 1e308, -1e308, 5e-324, r.uniform(-1e9, 1e9)])
        if pick in (4, 5):
            return self.text()
        if pick in (6, 7):
            return [self.value(depth + 1) for _ in range(r.randrange(5))]
        return {self.text()[:20]: self.value(depth + 1) for _ in range(r.randrange(5))}

    # ------------------------------------------------------------ frames

    def _next_id(self) -> int:
        self._req_id += 1
        return self._req_id

    def _envelope(self, msg_type: Any, data_json: bytes, req_id: Any = None) -> bytes:
        head = msgspec.json.encode({"type": msg_type, "account_id": self.account_id, "seq": 1, "ts": 1.0})
        rid = msgspec.json.encode(req_id if req_id is not None else self._next_id())
        return head[:-1] + b',"req_id":' + rid + b',"data":' + data_json + b"}"

    def payload(self) -> tuple[str, bytes]:
        """(kind, JSON body) of one frame."""
        r = self.rng
        kind = r.choices(
            [
                "bytes",
                "not_object",
                "envelope",
                "unknown",
                "random_data",
                "mutated",
                "deep",
                "nan",
                "huge",
                "unicode",
            ],
            weights=[8, 4, 6, 6, 14, 40, 4, 8, 3, 7],
        )[0]
        msg_type = r.choice(self.types)
        if kind == "bytes":
            body = r.randbytes(r.randrange(0, 3000))
        elif kind == "not_object":
            body = r.choice([b"[1,2,3]", b'"order_req"', b"null", b"1e999", b"{", b"{}", b"[]"])
        elif kind == "envelope":
            body = msgspec.json.encode(
                r.choice(
                    [
                        {"type": 5, "data": {}},
                        {"type": msg_type, "seq": "one", "data": {}},
                        {"type": msg_type, "req_id": "7", "data": {}},
                        {"type": msg_type, "req_id": 2**70, "data": {}},
                        {"type": msg_type, "account_id": self.text(), "req_id": 5, "data": {}},
                        {"data": {}},
                        {"type": None},
                    ]
                )
            )
        elif kind == "unknown":
            body = self._envelope(self.text(), msgspec.json.encode(self.value()))
        elif kind == "random_data":
            body = self._envelope(msg_type, msgspec.json.encode(self.value()))
        elif kind == "mutated":
            body = self._envelope(msg_type, msgspec.json.encode(self.mutate(msg_type)))
        elif kind == "deep":
            n = r.choice([100, 1000, 5000, 50_000])
            inner = (b"[" * n + b"]" * n) if r.random() < 0.5 else (b'{"a":' * n + b"1" + b"}" * n)
            body = self._envelope(msg_type, inner)
        elif kind == "nan":
            token = r.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"nan"])
            template = msgspec.json.encode(TEMPLATES.get(msg_type, {"price": 0.0}))
            body = self._envelope(msg_type, template.replace(b"3000.0", token, 1).replace(b"0.0", token, 1))
        elif kind == "huge":
            data = dict(TEMPLATES.get(msg_type, {})) if isinstance(TEMPLATES.get(msg_type), dict) else {}
            field = r.choice([*data, "extra"]) if data else "extra"
            data[field] = r.choice(["z" * 2_000_000, list(range(200_000)), 10**300])
            body = self._envelope(msg_type, msgspec.json.encode(data))
        else:  # unicode: escaped surrogates and invalid UTF-8 in strings
            raw = r.choice(
                [b'"\\ud800"', b'"\\udfff\\ud800"', b'"\xff\xfe"', b'"\xc3\x28"', b'"\xed\xa0\x80"']
            )
            template = msgspec.json.encode(TEMPLATES.get(msg_type, {"x": "m2705.DCE"}))
            body = self._envelope(msg_type, template.replace(b'"m2705.DCE"', raw, 1))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return kind, body

    def mutate(self, msg_type: str) -> Any:
        template = TEMPLATES.get(msg_type)
        if isinstance(template, list):
            data: Any = list(template)
            data[self.rng.randrange(len(data))] = self.value()
            return data
        data = dict(template or {})
        r = self.rng
        for _ in range(r.randrange(1, 3)):
            field = r.choice([*data, "unexpected_field"]) if data else "x"
            if r.random() < 0.15 and field in data:
                del data[field]
            else:
                data[field] = self.value()
        return data

    def frames(self, n: int) -> Iterator[bytes]:
        for _ in range(n):
            _kind, body = self.payload()
            yield HEADER.pack(len(body)) + body


def broken_framing(max_frame_bytes: int) -> list[tuple[str, bytes]]:
    """Frames that break the stream itself: each must close its connection (and only it)."""
    return [
        ("length past the limit", HEADER.pack(max_frame_bytes + 1) + b"{}"),
        ("length 4 GiB", b"\xff\xff\xff\xff" + b"x" * 100),
        ("stream ends inside a frame", HEADER.pack(1000) + b'{"type": "status_req"'),
        ("stream ends inside a header", b"\x00\x00"),
    ]


class Impostor:
    """A trader of the test's: a child process that holds the account's lock (as our own
    trader would: the manager adopts only the lock's holder) and made the connection, which
    it hands to the test. The manager takes the kernel's word for who registered
    (SO_PEERCRED) and may signal that pid when it stops: it must never be the test's own."""

    CODE = (
        "import socket, sys\n"
        "from pathlib import Path\n"
        "from core.trader_process import AccountLock\n"
        "lock = AccountLock(Path(sys.argv[3])); lock.acquire()\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "socket.send_fds(socket.socket(fileno=int(sys.argv[2])), [b'x'], [s.fileno()])\n"
        "sys.stdin.read()  # holds the lock until the test closes our stdin\n"
    )

    def __init__(self, child: subprocess.Popen[bytes], link: Link) -> None:
        self.child = child
        self.link = link

    @classmethod
    async def connect(cls, path: Path, state_dir: Path, account_id: str) -> Impostor:
        ours, theirs = socket.socketpair()
        child = subprocess.Popen(  # noqa: ASYNC220 - waited on in a thread, at the end
            [sys.executable, "-c", cls.CODE, str(path), str(theirs.fileno()), str(state_dir)],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.PIPE,
        )
        theirs.close()
        try:
            _msg, fds, _flags, _addr = await asyncio.wait_for(
                asyncio.to_thread(socket.recv_fds, ours, 1, 1), 30
            )
        finally:
            ours.close()
        reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fds[0]))
        return cls(child, Link(reader, writer, account_id=account_id))

    def info(self, account_id: str, data_dir: Path, config_path: Path, venue_identity: str) -> TraderInfo:
        """What our own trader would say in its register."""
        return TraderInfo(
            account_id=account_id,
            gateway="sim",
            pid=self.child.pid,
            data_dir=str(data_dir),
            config_path=str(config_path),
            venue_identity=venue_identity,
        )

    async def stop(self) -> None:
        self.link.writer.transport.abort()
        if self.child.stdin is not None:
            self.child.stdin.close()
        await asyncio.to_thread(self.child.wait, 30)
