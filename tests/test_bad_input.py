"""Bad input of every size: requests are bounded where they are decoded, and whatever an
account's database holds, its snapshot and console state still fit in a frame."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import paths as cfg_paths
from core.client import RemoteConsoleClient
from core.control import ControlServer
from core.manager import TradingManager
from core.models import (
    MAX_NAME_LENGTH,
    MAX_SYMBOL_LENGTH,
    MAX_VOLUME,
    Direction,
    Offset,
    Order,
    OrderRequest,
    OrderType,
    Status,
    TraderStatus,
    now,
)
from core.protocol import (
    MAX_ROW_BYTES,
    Link,
    ProtocolError,
    SchemaError,
    Snapshot,
    decode_payload,
    encoded_size,
    fit_snapshot,
)
from storage.database import AccountDatabase, database_path
from tests.conftest import CoreEnv, sim_account, wait_until

HUGE_SYMBOL = "x" * 60_000 + ".SHFE"


def _frame(msg_type: str, data: object, *, account_id: str = "A1", req_id: int = 7) -> bytes:
    return msgspec.json.encode({"type": msg_type, "account_id": account_id, "req_id": req_id, "data": data})


def _refusal(body: bytes) -> SchemaError:
    with pytest.raises(SchemaError) as info:
        decode_payload(body)
    return info.value


ORDER = {"vt_symbol": "au2612.SHFE", "direction": "LONG", "price": 912.34, "volume": 1}


# ---------------------------------------------------------------- decode-time bounds


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"vt_symbol": HUGE_SYMBOL}, "vt_symbol", f"length <= {MAX_SYMBOL_LENGTH}"),
        ({"vt_symbol": "au2612.SHFE\n12:00:00 A2 FILLED"}, "vt_symbol", "a contract symbol such as"),
        ({"vt_symbol": "au2612"}, "vt_symbol", "a contract symbol such as"),
        ({"reference": "r" * 1000}, "reference", f"length <= {MAX_NAME_LENGTH}"),
        ({"reference": "grid\r\nforged"}, "reference", "printable text"),
        ({"volume": 0}, "volume", "> 0"),
        ({"volume": -3}, "volume", "> 0"),
        ({"volume": 1.5}, "volume", "multiple of 1"),
        ({"volume": MAX_VOLUME + 1}, "volume", "<= "),
        ({"price": -1}, "price", ">= 0"),
        ({"price": 1e300}, "price", "<= "),
    ],
)
def test_an_order_request_out_of_bounds_is_refused_naming_the_field(
    change: dict[str, object], field: str, words: str
) -> None:
    exc = _refusal(_frame("order_req", {**ORDER, **change}))
    assert exc.req_id == 7 and exc.msg_type == "order_req"  # answerable: the stream goes on
    assert f"$.{field}" in str(exc) and words in str(exc), str(exc)
    assert len(str(exc)) < 300, "the refusal never echoes the input"


def test_infinite_and_not_a_number_prices_never_decode() -> None:
    body = _frame("order_req", ORDER).replace(b"912.34", b"1e400")  # JSON's way to say inf
    assert "price" in str(_refusal(body))
    with pytest.raises(ProtocolError):
        decode_payload(_frame("order_req", ORDER).replace(b"912.34", b"NaN"))


def test_other_requests_are_bounded_too() -> None:
    assert "$.order_id" in str(_refusal(_frame("cancel_req", {"order_id": "o" * 500})))
    assert "$.order_id" in str(_refusal(_frame("cancel_req", {"order_id": ""})))
    assert "$.vt_symbol" in str(
        _refusal(_frame("close_req", {"vt_symbol": HUGE_SYMBOL, "direction": "LONG"}))
    )
    assert "$.volume" in str(
        _refusal(_frame("close_req", {"vt_symbol": "au2612.SHFE", "direction": "LONG", "volume": 0.5}))
    )
    assert "$.vt_symbol" in str(_refusal(_frame("cancel_all_req", {"vt_symbol": "a\nb.SHFE"})))
    assert "$.name" in str(_refusal(_frame("strategy_req", {"action": "start", "name": "n" * 100})))
    assert "$.symbols" in str(_refusal(_frame("subscribe_req", {"symbols": ["au2612.SHFE"] * 6000})))
    assert "$.limit" in str(_refusal(_frame("history_req", {"kind": "orders", "limit": 10**9})))
    long_id = _refusal(_frame("order_req", ORDER, account_id="A" * 70_000))
    assert long_id.req_id == 7 and "account id longer than" in str(long_id)


def test_deeply_nested_frames_are_refused_not_raised() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for body in (
        b'{"type": "order_req", "req_id": 1, "data": ' + deep + b"}",
        b'{"type": "log", "data": {"x": ' + deep + b"}}",
        deep,
    ):
        with pytest.raises(ProtocolError):  # and nothing else: a RecursionError used to escape
            decode_payload(body)


def test_an_unknown_type_of_any_size_is_refused_in_few_words() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_payload(_frame("x" * 60_000, {}))
    assert len(str(info.value)) < 100


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["vt_symbol", "direction", "offset", "type", "price", "volume", "reference"]),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(min_value=-(10**30), max_value=10**30),
            st.floats(allow_nan=False),
            st.text(max_size=80),
            st.sampled_from(["au2612.SHFE", "LONG", "SHORT", "OPEN", "CLOSE", "LIMIT", "MARKET"]),
        ),
    )
)
def test_whatever_an_order_request_holds_it_decodes_within_bounds_or_is_refused(data: dict) -> None:
    try:
        body = _frame("order_req", {**ORDER, **data})
    except (OverflowError, msgspec.EncodeError):  # not even JSON (an int beyond 64 bits...)
        return
    try:
        req = decode_payload(body).data
    except ProtocolError:
        return
    assert isinstance(req, OrderRequest)
    assert 3 <= len(req.vt_symbol) <= MAX_SYMBOL_LENGTH and req.vt_symbol.isprintable()
    assert len(req.reference) <= MAX_NAME_LENGTH and req.reference.isprintable()
    assert math.isfinite(req.price) and req.price >= 0
    assert 0 < req.volume <= MAX_VOLUME and req.volume == int(req.volume)


# ---------------------------------------------------------------- snapshots fit, whatever is stored


def _poisoned_order(n: int, symbol: str = HUGE_SYMBOL) -> Order:
    at = now() - timedelta(minutes=300 - n)
    return Order(
        account_id="A1",
        order_id=f"LOCAL.poison-{n}",
        vt_symbol=symbol,
        direction=Direction.LONG,
        offset=Offset.OPEN,
        type=OrderType.LIMIT,
        price=1.0,
        volume=1,
        status=Status.REJECTED,
        datetime=at,
        update_time=at,
        status_msg=f"unknown contract {symbol}",
    )


def test_fit_snapshot_keeps_the_account_whole_and_drops_oversized_rows_then_the_oldest() -> None:
    from tests.fake_client import FakeClient

    state = FakeClient().state("DQ1")
    assert state.info is not None
    base = Snapshot(
        info=state.info,
        account=state.account,
        contracts=list(state.contracts.values()),
        ticks=list(state.ticks.values()),
        positions=list(state.positions.values()),
        orders=list(state.orders.values()),
        trades=list(state.trades),
    )
    fitted, note = fit_snapshot(base, 16 * 1024 * 1024)
    assert fitted == base and note == ""  # what fits is sent as it is

    poisoned = msgspec.structs.replace(base, orders=[_poisoned_order(n) for n in range(300)] + base.orders)
    fitted, note = fit_snapshot(poisoned, 8 * 1024 * 1024)
    assert encoded_size(fitted) < 8 * 1024 * 1024
    assert fitted.orders == base.orders, "every honest order kept, every oversized one left out"
    assert "300 finished orders" in note

    # a budget that holds the account but little history: the newest history stays
    small = msgspec.structs.replace(base, trades=list(base.trades) * 200)
    fitted, note = fit_snapshot(small, encoded_size(base) + 2000)
    assert fitted.positions == base.positions and fitted.contracts == base.contracts
    assert [o for o in fitted.orders if o.is_active] == [o for o in base.orders if o.is_active]
    assert 0 < len(fitted.trades) < len(small.trades) and fitted.trades[-1] == small.trades[-1]
    assert "trades" in note
    assert all(encoded_size(o) <= MAX_ROW_BYTES for o in fitted.orders)


# ---------------------------------------------------------------- with real processes

ACCOUNTS = sim_account("A1", "m2705.DCE", seed=4) + sim_account("A2", "au2606.SHFE", seed=5, rate=20.0)


@dataclass
class Daemon:
    manager: TradingManager
    control: ControlServer
    path: str


@pytest.fixture
async def daemon_factory(core_env: CoreEnv) -> AsyncIterator[object]:
    started: list[Daemon] = []

    async def start() -> Daemon:
        config = core_env.write_config(ACCOUNTS)
        mgr = TradingManager(config, config_path=core_env.config_path, data_dir=core_env.data_dir)
        path = cfg_paths.control_socket_path(mgr.sock_dir)
        await mgr.start()
        control = ControlServer(mgr, path)
        await control.start()
        d = Daemon(mgr, control, str(path))
        started.append(d)
        await wait_until(
            lambda: all(mgr.state(a).status is TraderStatus.CONNECTED for a in ("A1", "A2")),
            timeout=60,
            what="both accounts connected",
        )
        return d

    yield start
    for d in started:
        await d.control.stop()
        await d.manager.stop()


async def _attached(path: str) -> RemoteConsoleClient:
    client = RemoteConsoleClient(path, [("A1", "sim"), ("A2", "sim")])
    await client.connect()
    await wait_until(
        lambda: all(client.state(a).status is TraderStatus.CONNECTED for a in ("A1", "A2")),
        timeout=30,
        what="the attached console sees both accounts",
    )
    return client


async def test_a_flood_of_huge_symbols_is_refused_stores_nothing_and_the_account_stays_reachable(
    daemon_factory, core_env: CoreEnv
) -> None:
    d: Daemon = await daemon_factory()
    a1 = d.manager.state("A1")
    orders_before = len(a1.orders)
    ticks_seen: list[int] = []
    d.manager.aggregator.subscribe(lambda change: ticks_seen.append(1) if change.account_id == "A2" else None)

    reader, writer = await asyncio.open_unix_connection(d.path, limit=2**20)
    link = Link(reader, writer, account_id="A1")
    n = 300
    for req_id in range(1, n + 1):
        link.send_nowait("order_req", {**ORDER, "vt_symbol": HUGE_SYMBOL}, req_id)  # type: ignore[arg-type]
        if req_id % 20 == 0:
            await writer.drain()
    replies = {}
    while len(replies) < n:
        msg = await asyncio.wait_for(link.recv(), 30)
        if msg.type == "reply":
            replies[msg.req_id] = msg.data
    await link.close()
    assert all(not r.ok and "$.vt_symbol" in r.error and len(r.error) < 300 for r in replies.values())
    assert len(a1.orders) == orders_before, "a refusal at decode time stores nothing"
    await wait_until(
        lambda: bool(ticks_seen), timeout=15, what="the other account streams on after the flood"
    )
    with AccountDatabase(database_path(core_env.data_dir, "A1"), readonly=True) as db:
        assert not [o for o in db.load_orders(limit=1000) if len(o.vt_symbol) > MAX_SYMBOL_LENGTH]

    client = await _attached(d.path)  # a console still attaches
    await client.close()


async def test_an_account_whose_database_is_already_poisoned_still_registers_and_attaches(
    daemon_factory, core_env: CoreEnv
) -> None:
    core_env.data_dir.mkdir(parents=True, exist_ok=True)
    with AccountDatabase(database_path(core_env.data_dir, "A1")) as db:
        for n in range(300):  # ~36 MB of rows, more than one 16 MB frame
            db.save_order(_poisoned_order(n))
        db.save_order(_poisoned_order(300, symbol="m2705.DCE"))  # and an honest refusal after them
    d: Daemon = await daemon_factory()
    a1 = d.manager.state("A1")
    # only the trader's snapshot tells of its finished orders: it arrived
    await wait_until(lambda: "LOCAL.poison-300" in a1.orders, timeout=20, what="A1's snapshot")
    assert not [o for o in a1.orders.values() if len(o.vt_symbol) > MAX_SYMBOL_LENGTH]
    await wait_until(
        lambda: any("left out of the snapshot" in e.message for e in a1.logs),
        timeout=20,
        what="the trader saying what it left out",
    )
    client = await _attached(d.path)
    try:
        assert client.state("A1").info is not None
    finally:
        await client.close()


@pytest.mark.parametrize(
    "text", ["\x80", "grid\x9b", "a\u2028b", "\u202egrid", "zero\u200bwidth", "\ufeffbom"]
)
def test_request_text_is_printable_all_through(text: str) -> None:
    exc = _refusal(_frame("order_req", {**ORDER, "reference": text}))
    assert exc.req_id == 7 and "$.reference" in str(exc) and "printable text" in str(exc)


def test_printable_unicode_names_are_welcome() -> None:
    req = decode_payload(_frame("order_req", {**ORDER, "reference": "黄金 网格-1"})).data
    assert req.reference == "黄金 网格-1"


def test_a_final_line_break_is_no_way_around_the_patterns() -> None:
    import re

    from core.models import PRINTABLE, SYMBOL_PATTERN

    assert not re.search(SYMBOL_PATTERN, "au2612.SHFE\n")  # ``$`` would match before it
    assert not re.search(PRINTABLE, "manual\n")
    assert "a contract symbol" in str(_refusal(_frame("cancel_all_req", {"vt_symbol": "au2612.SHFE\n"})))
