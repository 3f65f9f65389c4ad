"""A local stand-in for TqSdk's servers: a real ``TqApi`` with ``TqSim`` runs offline against it.

One aiohttp application on 127.0.0.1 (a free port), served by its own thread and event loop:

- the auth service (``TqAuth`` reads its base URL from ``TQ_AUTH_URL``):
  ``POST /auth/realms/shinnytech/protocol/openid-connect/token`` (password and refresh-token
  grants; answers an unsigned-checked JWT carrying ``grants`` and ``sub``, as tqsdk decodes it
  without verifying), ``GET .../rest/get-grant/tq`` (the licence's expiry) and
  ``PUT .../rest/update-grant-accounts/{id}`` (real accounts only);
- the market-data websocket (``TqApi(_md_url=...)``), ``/t/md/front/mobile``: the diff
  protocol of TqSdk. The client sends ``peek_message`` when it can take data; the server
  answers with one ``rtn_data`` holding every pending diff, or holds the peek until there is
  one. ``subscribe_quote`` answers the quotes of its ``ins_list`` (and echoes ``ins_list``, which
  tqsdk's reconnect logic compares), ``ins_query`` answers contract info under ``symbols``
  (``multi_symbol_info``, the fields tqsdk's ``_symbols_to_quotes`` reads, including the
  ``margin`` and ``commission`` per lot that TqSim needs). The first answer says
  ``mdhis_more_data: false``, which completes ``TqApi``'s construction.

What is not served (TqSim never asks for it): ``api.shinnytech.com/ns`` (the md URL lookup,
skipped when ``_md_url`` is given), ``files.shinnytech.com/{broker}.json`` (a real account's
trading front; ``TQ_TD_URL`` or ``_td_url`` would replace it), the contract file of
``TQ_INS_URL`` (only with ``_stock=False``), the holiday and continuous-contract files
(``TQ_CHINESE_HOLIDAY_URL``, ``TQ_CONT_TABLE_URL``; calendar calls only) and the version notice
``tqsdk.changelog_notification`` fetches once at import (no override; it fails fast offline and
tqsdk ignores the failure).

Like a live market, the fake re-sends the (unchanged) quotes of subscribed contracts every
``heartbeat`` seconds (0.05): TqSim reports an order's result only when market data next
arrives, so without this stream its answers would wait for the next ``set_quote``.

Quotes carry a fixed venue time (``FakeTq.now``, a Monday 10:00 by default) so TqSim's trading
hours check does not depend on the wall clock; tests move it with ``set_quote(datetime=...)``.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import WSMsgType, web

MD_PATH = "/t/md/front/mobile"
TOKEN_PATH = "/auth/realms/shinnytech/protocol/openid-connect/token"
GRANT_PATH = "/auth/realms/shinnytech/rest/get-grant/tq"
ADD_ACCOUNT_PATH = "/auth/realms/shinnytech/rest/update-grant-accounts/{account_id}"
DEFAULT_NOW = "2026-01-05 10:00:00.000000"  # a Monday, inside the day session below
TRADING_TIME = {"day": [["09:00:00", "15:00:00"]], "night": [["21:00:00", "23:00:00"]]}
FEATURES = ["futr", "sec", "lmt_idx", "tq_dl", "tq_ma"]
_SYMBOL_IN_QUERY = re.compile(r'"([A-Z]+\.[A-Za-z0-9&\- ]+)"')


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (closed again at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FakeContract:
    """What the fake's contract service knows about one contract (``EXCHANGE.symbol``)."""

    symbol: str
    price_tick: float
    volume_multiple: int
    margin: float  # per lot, used by TqSim
    commission: float  # per lot, used by TqSim
    pre_settlement: float
    name: str = ""

    def info(self) -> dict[str, Any]:
        """The ``multi_symbol_info`` node of an ``ins_query`` answer."""
        exchange, instrument = self.symbol.split(".", 1)
        decimals = len(f"{self.price_tick:g}".partition(".")[2])
        return {
            "instrument_id": self.symbol,
            "instrument_name": self.name or instrument,
            "exchange_id": exchange,
            "product_id": instrument.rstrip("0123456789"),
            "class": "FUTURE",
            "price_tick": self.price_tick,
            "price_decs": decimals,
            "volume_multiple": self.volume_multiple,
            "max_limit_order_volume": 500,
            "max_market_order_volume": 30,
            "min_limit_order_volume": 1,
            "min_market_order_volume": 1,
            "trading_time": TRADING_TIME,
            "expired": False,
            "expire_datetime": 1_800_000_000_000_000_000,
            "delivery_year": 2026,
            "delivery_month": 1,
            "margin": self.margin,
            "commission": self.commission,
            "settlement_price": self.pre_settlement,
            "upper_limit": self.pre_settlement * 1.1,
            "lower_limit": self.pre_settlement * 0.9,
            "pre_open_interest": 1000,
            "pre_close": self.pre_settlement,
        }


DEFAULT_CONTRACTS = (
    FakeContract(
        symbol="SHFE.rb2601",
        price_tick=1.0,
        volume_multiple=10,
        margin=3500.0,
        commission=3.0,
        pre_settlement=3500.0,
    ),
    FakeContract(
        symbol="DCE.m2605",
        price_tick=1.0,
        volume_multiple=10,
        margin=3000.0,
        commission=1.5,
        pre_settlement=3000.0,
    ),
)


def initial_quote(contract: FakeContract, now: str) -> dict[str, Any]:
    """A two-sided quote one tick wide around the previous settlement."""
    mid = contract.pre_settlement
    tick = contract.price_tick
    return {
        "datetime": now,
        "last_price": mid,
        "bid_price1": mid - tick,
        "bid_volume1": 10,
        "ask_price1": mid + tick,
        "ask_volume1": 10,
        "highest": mid,
        "lowest": mid,
        "open": mid,
        "close": float("nan"),
        "average": mid,
        "volume": 100,
        "amount": mid * 100 * contract.volume_multiple,
        "open_interest": 1000,
        "settlement": float("nan"),
        "upper_limit": round(mid * 1.1 / tick) * tick,
        "lower_limit": round(mid * 0.9 / tick) * tick,
        "pre_open_interest": 1000,
        "pre_settlement": mid,
        "pre_close": mid,
    }


@dataclass
class _Client:
    """One market-data websocket connection and what it is owed."""

    ws: web.WebSocketResponse
    pending_peek: bool = False
    diffs: list[dict[str, Any]] = field(default_factory=list)
    ins_list: set[str] = field(default_factory=set)
    transport: asyncio.BaseTransport | None = None


class FakeTq:
    """The fake servers; ``with FakeTq() as fake:`` starts and stops them.

    ``user``/``password`` are the only credentials the token endpoint accepts (anything else is
    a 401, like the real service). ``received`` records every md request (``aid`` and body) and
    ``auth_requests`` the auth paths hit and ``issued_tokens`` the access tokens, for assertions.
    """

    def __init__(
        self,
        *,
        user: str = "tester",
        password: str = "tester-pass",
        contracts: tuple[FakeContract, ...] = DEFAULT_CONTRACTS,
        now: str = DEFAULT_NOW,
        heartbeat: float = 0.05,
    ) -> None:
        self.user = user
        self.password = password
        self.now = now
        self.heartbeat = heartbeat
        self.contracts = {c.symbol: c for c in contracts}
        self.quotes = {c.symbol: initial_quote(c, now) for c in contracts}
        self.received: list[dict[str, Any]] = []
        self.auth_requests: list[str] = []
        self.issued_tokens: list[str] = []
        self._clients: list[_Client] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fake-tq", daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._port = 0
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeTq:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake TqSdk servers did not start")
        if self._error is not None:
            raise RuntimeError(f"fake TqSdk servers failed: {self._error!r}")
        return self

    def close(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def __enter__(self) -> FakeTq:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def auth_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def md_url(self) -> str:
        return f"ws://127.0.0.1:{self._port}{MD_PATH}"

    # ------------------------------------------------------------------ test controls

    def set_quote(self, symbol: str, **fields: Any) -> None:
        """Change a quote (``ask_price1=...``, ``datetime=...``) and push it to its subscribers.

        Without ``datetime`` the quote keeps the fake's current venue time; with it the venue
        time moves for every later quote.
        """
        self._call(self._set_quote, symbol, fields)

    def drop_md_clients(self) -> None:
        """Cut every market-data connection without a close frame, as a network outage would
        (TqSdk reconnects silently after a clean close, and notices an abort)."""
        self._call(self._abort_clients)

    def _abort_clients(self) -> None:
        for client in list(self._clients):
            if client.transport is not None:
                client.transport.abort()

    def md_requests(self, aid: str) -> list[dict[str, Any]]:
        """The md requests received so far with this ``aid``."""
        return [pack for pack in list(self.received) if pack.get("aid") == aid]

    @property
    def md_clients(self) -> int:
        return len(self._clients)

    def _call(self, func: Callable[..., None], *args: Any) -> None:
        """Run ``func`` on the server loop and wait for it (thread-safe)."""
        done = threading.Event()

        def run() -> None:
            try:
                func(*args)
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        if not done.wait(5):
            raise RuntimeError("fake TqSdk servers did not answer")

    # ------------------------------------------------------------------ server

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post(TOKEN_PATH, self._token)
        app.router.add_get(GRANT_PATH, self._grant)
        app.router.add_put(ADD_ACCOUNT_PATH, self._add_account)
        app.router.add_get(MD_PATH, self._md)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = int(sock.getsockname()[1])
        site = web.SockSite(runner, sock)
        await site.start()
        self._ready.set()
        beat = asyncio.create_task(self._beat())
        try:
            await self._stop.wait()
        finally:
            beat.cancel()
            for client in list(self._clients):
                await client.ws.close()
            await runner.cleanup()

    # ------------------------------------------------------------------ auth

    def _token_for(self, username: str) -> web.Response:
        payload = {
            "sub": f"fake-{username}",
            "grants": {"features": FEATURES, "accounts": []},
            "exp": int(time.time()) + 86_400,
        }
        token = jwt.encode(payload, "fake-tq-signing-key-of-32-bytes!", algorithm="HS256")
        self.issued_tokens.append(token)
        return web.json_response({"access_token": token, "refresh_token": f"refresh-{username}"})

    async def _token(self, request: web.Request) -> web.Response:
        self.auth_requests.append(request.path)
        form = await request.post()
        if form.get("grant_type") == "refresh_token":
            return self._token_for(self.user)
        if form.get("username") != self.user or form.get("password") != self.password:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid user credentials"}, status=401
            )
        return self._token_for(self.user)

    async def _grant(self, request: web.Request) -> web.Response:
        self.auth_requests.append(request.path)
        return web.json_response(
            {"exp": int(time.time()) + 365 * 86_400, "daysleft": 365, "account_type": "free"}
        )

    async def _add_account(self, request: web.Request) -> web.Response:
        self.auth_requests.append(request.path)
        return web.json_response({})

    # ------------------------------------------------------------------ market data

    async def _md(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        client = _Client(ws=ws, transport=request.transport)
        client.diffs.append({"mdhis_more_data": False, "ins_list": ""})
        self._clients.append(client)
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await self._on_request(client, json.loads(msg.data))
        finally:
            self._clients.remove(client)
        return ws

    async def _on_request(self, client: _Client, pack: dict[str, Any]) -> None:
        self.received.append(pack)
        aid = pack.get("aid")
        if aid == "peek_message":
            client.pending_peek = True
        elif aid == "subscribe_quote":
            wanted = {s for s in pack.get("ins_list", "").split(",") if s}
            added = wanted - client.ins_list
            client.ins_list = wanted
            client.diffs.append(
                {
                    "ins_list": pack.get("ins_list", ""),
                    "quotes": {s: dict(self.quotes[s]) for s in sorted(added) if s in self.quotes},
                }
            )
        elif aid == "ins_query" and pack.get("query"):
            client.diffs.append({"symbols": {pack["query_id"]: self._query_result(pack)}})
        await self._flush(client)

    def _query_result(self, pack: dict[str, Any]) -> dict[str, Any]:
        wanted = pack.get("variables", {}).get("instrument_id") or _SYMBOL_IN_QUERY.findall(pack["query"])
        infos = [self.contracts[s].info() for s in wanted if s in self.contracts]
        return {
            "query": pack["query"],
            "variables": pack.get("variables", {}),
            "result": {"multi_symbol_info": infos},
        }

    async def _flush(self, client: _Client) -> None:
        if not client.pending_peek or not client.diffs or client.ws.closed:
            return
        data, client.diffs = client.diffs, []
        client.pending_peek = False
        await client.ws.send_str(json.dumps({"aid": "rtn_data", "data": data}))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            for client in list(self._clients):
                if client.pending_peek and not client.diffs and client.ins_list:
                    same = {s: {"datetime": self.now} for s in sorted(client.ins_list) if s in self.quotes}
                    client.diffs.append({"quotes": same})
                await self._flush(client)

    def _set_quote(self, symbol: str, fields: dict[str, Any]) -> None:
        if "datetime" in fields:
            self.now = fields["datetime"]
        update = {**fields, "datetime": self.now}
        self.quotes[symbol].update(update)
        for client in self._clients:
            if symbol in client.ins_list:
                client.diffs.append({"quotes": {symbol: dict(update)}})  # the next peek or beat sends it
